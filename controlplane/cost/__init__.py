"""Unit cost per settled bet: the cost model, FOCUS billing imports, allocation and the report."""
