"""hwseg: quantized semantic-segmentation networks to streaming FPGA accelerators."""

__version__ = "0.1.0"
