"""Studies: sweeps over eqprop runs, exported as self-describing xarray datasets."""
