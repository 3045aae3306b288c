"""Loop stages 6–7: information-entropy selection of training frames, fine-tuning, evaluation."""
