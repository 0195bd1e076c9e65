from cxrmap.cli import main

main()
