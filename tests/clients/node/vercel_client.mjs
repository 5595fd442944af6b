// The Vercel AI SDK's OpenAI Responses model (`openai.responses(...)`) against
// StepBlend, as a user's code would use it: generateText, streamText, and a tool
// loop the SDK runs itself. Prints what it saw as one JSON line for
// tests/e2e/test_node_clients.py to check.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";

const { BASE_URL: baseURL, TOKEN: apiKey, MODEL: model } = process.env;
const openai = createOpenAI({ apiKey, baseURL });
const out = {};

const generated = await generateText({
  model: openai.responses(model),
  system: "Be brief.",
  prompt: "Hello from Vercel",
  include: { responseBody: true },
  maxRetries: 0,
});
out.generate = {
  text: generated.text,
  finishReason: generated.finishReason,
  usage: { inputTokens: generated.usage.inputTokens, outputTokens: generated.usage.outputTokens },
  responseId: generated.response.id,
  modelId: generated.response.modelId,
  stepblend: generated.response.body?.stepblend,
  provider: generated.response.headers?.["x-stepblend-provider"],
};

const streamed = streamText({ model: openai.responses(model), prompt: "Hello from Vercel", maxRetries: 0 });
const pieces = [];
for await (const piece of streamed.textStream) pieces.push(piece);
out.stream = {
  pieces: pieces.length,
  text: pieces.join(""),
  finishReason: await streamed.finishReason,
  outputTokens: (await streamed.usage).outputTokens,
};

// StepBlend keeps no responses: the SDK must send the whole conversation back
// (store: false), not references to items OpenAI would have stored.
const calls = [];
const looped = await generateText({
  model: openai.responses(model),
  prompt: "What is the weather in Paris?",
  tools: {
    get_weather: tool({
      description: "The weather in a city",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
        additionalProperties: false,
      }),
      execute: async ({ city }) => {
        calls.push(city);
        return `Sunny, 21C in ${city}`;
      },
    }),
  },
  stopWhen: stepCountIs(3),
  providerOptions: { openai: { store: false } },
  maxRetries: 0,
});
out.tools = {
  calls,
  steps: looped.steps.map((step) => step.finishReason),
  text: looped.text,
};

console.log(JSON.stringify(out));
