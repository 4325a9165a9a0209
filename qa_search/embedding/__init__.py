"""Text embedders: the protocol, torch and ONNX models, loading, the embedding and query caches."""
