/* Test-only stand-in for pdh.dll under Wine 8, whose PdhEnumObjectsW is an
 * unimplemented stub that aborts the process: sysinfo calls it for CPU usage. Every
 * function sysinfo 0.40 imports fails with PDH_CSTATUS_NO_OBJECT, so what sysinfo
 * reads through performance counters (CPU usage, total and per core) is simply
 * missing under Wine; everything else is measured. Never shipped. */
#include <windows.h>

#define NO_OBJECT ((LONG)0xC0000BB8L)

LONG WINAPI PdhOpenQueryW(LPCWSTR src, DWORD_PTR user, PVOID *query) { return NO_OBJECT; }
LONG WINAPI PdhCloseQuery(PVOID query) { return NO_OBJECT; }
LONG WINAPI PdhAddEnglishCounterW(PVOID q, LPCWSTR path, DWORD_PTR user, PVOID *c) { return NO_OBJECT; }
LONG WINAPI PdhRemoveCounter(PVOID counter) { return NO_OBJECT; }
LONG WINAPI PdhCollectQueryData(PVOID query) { return NO_OBJECT; }
LONG WINAPI PdhGetFormattedCounterValue(PVOID c, DWORD fmt, LPDWORD type, PVOID value) { return NO_OBJECT; }
LONG WINAPI PdhGetFormattedCounterArrayW(PVOID c, DWORD fmt, LPDWORD size, LPDWORD count, PVOID items) { return NO_OBJECT; }
LONG WINAPI PdhEnumObjectsW(LPCWSTR src, LPCWSTR machine, LPWSTR list, LPDWORD len, DWORD detail, BOOL refresh) { return NO_OBJECT; }
