"""The Django project package.

The Celery app (`gateway_project.celery`) is not imported here, as Django projects often
do: the task modules import it themselves (`@app.task`), so a proxy worker that never
queues a task never loads Celery (about 5 MB per worker), and `celery -A gateway_project`
still finds it as the package's `celery` submodule.
"""
