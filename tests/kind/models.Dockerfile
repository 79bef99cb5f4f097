# Serves examples/models over HTTP inside the kind cluster (model URIs http://models.default.svc:8000/...).
FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home models
COPY examples/models /models
USER 10001
EXPOSE 8000
CMD ["python", "-m", "http.server", "8000", "--directory", "/models"]
