"""Example flows: `pinrun run examples.pricing:flow --set order_id='"A-1001"'`."""
