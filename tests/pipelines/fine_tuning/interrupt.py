"""A Keras callback that interrupts ``fit`` like a kill, for the resume tests."""

import keras


class StopAfterEpochs(keras.callbacks.Callback):
    """Raise (like a kill) at the start of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


