"""Text-to-3D task: procedural shapes, prompts, 2D rewards on renders, metrics, splat generators and presets."""
