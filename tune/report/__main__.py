"""`python -m tune.report --sweep DIR`: rebuild a finished sweep's report.html."""
from tune.report.html import main

main()
