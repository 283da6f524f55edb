"""Server adapters: how a generation serves its app (uvicorn, callable)."""
