"""What every validator and bench plans over: the candidates (a Target on an artifact, opened through
engines.load), the PyTorch variants, parity against eager FP32 and the float64 references, the speed
loop and its row schema, timing, the NTIRE protocol, the machine line, one table writer, the browser."""
