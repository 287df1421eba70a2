"""dialsum-tui: a terminal run manager for Korean dialogue-summarization fine-tuning.

``dialsum_tui.manager`` owns the workspace, the queue, the processes and the truth about runs;
the Textual app on top only renders that state and posts intents. Nothing here imports torch.
"""

__version__ = "0.1.0"
