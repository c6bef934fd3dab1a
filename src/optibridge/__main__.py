from optibridge.cli.app import main

main()
