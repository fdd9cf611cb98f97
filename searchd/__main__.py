from searchd.cli import main

main()
