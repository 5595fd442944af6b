// The official @anthropic-ai/sdk for Node against StepBlend, as a user's code would
// use it: create, stream, a tool round trip, countTokens, and an error. Prints what
// it saw as one JSON line for tests/e2e/test_node_clients.py to check.
import Anthropic from "@anthropic-ai/sdk";

const { BASE_URL: baseURL, TOKEN: apiKey, MODEL: model } = process.env;
const client = new Anthropic({ apiKey, baseURL, maxRetries: 0 });
const ask = [{ role: "user", content: "Hello from Node" }];
const tools = [
  {
    name: "get_weather",
    description: "The weather in a city",
    input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
];
const out = {};

const message = await client.messages.create({ model, max_tokens: 256, messages: ask });
out.create = {
  text: message.content[0].text,
  model: message.model,
  stop_reason: message.stop_reason,
  usage: message.usage,
  stepblend: message.stepblend,
};

const events = [];
const stream = client.messages.stream({ model, max_tokens: 256, messages: ask });
stream.on("streamEvent", (event) => events.push(event.type));
const final = await stream.finalMessage();
out.stream = {
  text: final.content[0].text,
  events,
  stop_reason: final.stop_reason,
  output_tokens: final.usage.output_tokens,
};

const question = { role: "user", content: "What is the weather in Paris?" };
const first = await client.messages.create({ model, max_tokens: 256, tools, messages: [question] });
const call = first.content.find((block) => block.type === "tool_use");
const second = await client.messages.create({
  model,
  max_tokens: 256,
  tools,
  messages: [
    question,
    { role: "assistant", content: first.content },
    { role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: "Sunny, 21C" }] },
  ],
});
out.tools = {
  first_stop: first.stop_reason,
  call: { name: call.name, input: call.input },
  second_stop: second.stop_reason,
  second_blocks: second.content.map((block) => block.type),
};

out.count = (await client.messages.countTokens({ model, messages: ask })).input_tokens;

try {
  await new Anthropic({ apiKey: "not-a-token", baseURL, maxRetries: 0 }).messages.create({
    model,
    max_tokens: 16,
    messages: ask,
  });
} catch (error) {
  out.error = { name: error.constructor.name, status: error.status, type: error.error?.error?.type };
}

console.log(JSON.stringify(out));
