"""Training: targets for the prompt generator and fine-tuning of SAM with LoRA."""
