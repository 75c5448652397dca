"""The admin's index page as an operations dashboard (panels.py: the figures and who sees
them; charts.py: the traffic chart; views.py: the page). It sits at the top, beside the
URL map, because it reads every app: the audit log, billing, providers."""
