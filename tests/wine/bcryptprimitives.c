/* Test-only shim for Wine 8, which lacks bcryptprimitives.dll!ProcessPrng: Rust's
 * std (1.78+) imports it for its random numbers (HashMap keys). Forwards to
 * RtlGenRandom (advapi32!SystemFunction036). Built with mingw by tests/wine/setup.sh;
 * never shipped: real Windows 10+ has the function. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
