from pplevelset.infer.driver import sample

__all__ = ["sample"]
