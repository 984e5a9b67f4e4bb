"""The model-server process of `serve --workers N`: one process owns the model, the HTTP workers send it token ids."""
