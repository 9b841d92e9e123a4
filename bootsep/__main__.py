from bootsep.cli import main

main()
