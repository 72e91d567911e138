"""Text-to-image alignment: prompt data, a tiny 2D diffusion generator with an analytic reward (tests and toy
presets), and the Stable Diffusion 1.5 generator of the Nabla-GFlowNet presets."""
