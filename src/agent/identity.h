/* SPDX-License-Identifier: MIT */
#pragma once

/* banger-agent --identify ... (identity.c): 0 or 1, as a process exit status. */
int agent_identify_main(int argc, char **argv);
