"""lifpga's simulation: cocotb testbenches on Verilator and the virtual board."""
