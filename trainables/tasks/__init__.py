"""The built-in tasks, each written as a user writes a task file (trainables/task.py says how):
`python -m tuning.run --task NAME` picks one by its module's name."""
