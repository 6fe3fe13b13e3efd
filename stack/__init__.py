"""Process management for the whole stack: the vLLM engine and the API."""
