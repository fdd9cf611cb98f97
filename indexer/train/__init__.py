"""Model training: each module returns the saved model directory and its dev metrics."""
