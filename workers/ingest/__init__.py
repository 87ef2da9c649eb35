"""The ingest worker: decodes cameras (RTSP, files, frame folders) into capped Redis frame streams."""
