"""3D-native representation: splatter images ↔ 3D Gaussians, cameras and the differentiable Gaussian renderer."""
