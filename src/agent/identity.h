/* SPDX-License-Identifier: MIT */
#pragma once

/* banger-agent --identify ... (identity.c): 0 or 1, as a process exit status. */
int agent_identify_main(int argc, char **argv);
/* banger-agent --freeze (freeze.c): filesystems frozen until stdin ends. */
int agent_freeze_main(int argc, char **argv);
