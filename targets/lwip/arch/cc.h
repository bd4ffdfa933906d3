/* lwIP port definitions for a Linux host process (tcp-hil's lwIP target).
 *
 * The target runs lwIP the way bare-metal firmware does (NO_SYS=1, one thread), so the port
 * only has to say how to print, how to fail and where randomness comes from. Failing loudly
 * matters: an lwIP assertion is a finding, so it aborts the process and the harness sees it.
 */
#ifndef TCP_HIL_LWIP_ARCH_CC_H
#define TCP_HIL_LWIP_ARCH_CC_H

#include <stdio.h>
#include <stdlib.h>

#define LWIP_PLATFORM_DIAG(x) do { printf x; fflush(stdout); } while (0)
#define LWIP_PLATFORM_ASSERT(x) do { \
    fprintf(stderr, "lwip assertion \"%s\" failed at %s:%d\n", x, __FILE__, __LINE__); \
    fflush(NULL); abort(); } while (0)

/* random() is seeded in main() from --seed, so ports and MLD delays repeat from run to run. */
#define LWIP_RAND() ((u32_t)random())

#endif
