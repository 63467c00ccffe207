"""Ingress: signed CXone webhooks in, durable jobs out."""
