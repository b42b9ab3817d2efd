FROM python:3.11-slim-bookworm
# pg_dump and pg_restore of the compose file's PostgreSQL (15), for `qinglang backup` and `restore`
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY qinglang qinglang
COPY bot bot
COPY nlu nlu
COPY intake intake
COPY routing routing
COPY db db
COPY web web
COPY reports reports
RUN pip install --no-cache-dir .
ENV QINGLANG_DATA_DIR=/data QINGLANG_HOST=0.0.0.0
VOLUME /data
EXPOSE 8080
CMD ["qinglang", "serve"]
