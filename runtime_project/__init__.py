# The Celery app (runtime_project/celery.py) is not imported here, unlike Celery's Django
# template: it costs ~0.4 s at every start of every process, and only Celery processes
# (`celery -A runtime_project`, which loads runtime_project.celery itself) and
# sessions.dispatch (TASK_EXECUTOR=celery) need it.
