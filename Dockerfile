# One image for both services; the Deployment's command picks the app.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY job_orchestrator ./job_orchestrator
COPY microservice_x ./microservice_x
COPY dapr_support ./dapr_support
COPY sidecar ./sidecar
COPY bench ./bench
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
EXPOSE 8000 8001
CMD ["python", "-m", "job_orchestrator"]
