"""Samplers: batched random-walk MH (``rwmh``), Pyro's NUTS (``nuts``) and the driver (``run``)."""
