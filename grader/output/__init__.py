"""What a grading produces and how it is shown: the results dataclasses and their JSON, the HTML
report and class summary (jinja2 templates), the terminal table, the gradebook CSV and Gradescope
results. No torch and no sandbox: a report can be rendered from saved JSON alone.
"""
