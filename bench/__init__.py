"""The benchmark suite: `python -m bench` measures the pair against its floors and Celery."""
