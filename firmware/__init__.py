"""lifpga's firmware: shipped network images (``firmware/digits``) and the host driver."""
