"""lifpga's gateware (Amaranth HDL). The cores arrive with the hardware issue."""
