"""The supervisor: owns the listeners, runs generations, performs swaps."""
