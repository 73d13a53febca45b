"""Run safety for mmengine runs, as an add-on that configs opt into."""
