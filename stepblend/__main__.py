from stepblend.cli import main

main()
