"""What people read of a sweep: console tables (`tables`), the charts (`charts`), the winner's validation
pictures (`gallery`), report.html (`html`, with its CSS and JS in `static/`), W&B's summary run
(`wandb_summary`) and W&B Report (`wandb_report`). Everything here reads a sweep folder through
tune/records.py; no Ray.

`python -m tune.report --sweep DIR [--wandb]` rebuilds DIR/report.html (and, online, its W&B Report).
"""
