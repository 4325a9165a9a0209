from qa_search.cli import main

main()
