"""Ingress: authenticated webhooks in (contract §2, §8, §9), durable jobs out."""
