"""Keras models: backbones, fine-tuning, attacks, ideal images, feature maps, prediction."""
