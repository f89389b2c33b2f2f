from catalog_cli.main import main

main()
