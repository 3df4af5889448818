"""The Anchored E-Watermarking paper (arXiv 2602.17608): e-values, the LM watermark, baselines, vLLM."""
