/* ELF symbols, sections, build-id and .gnu_debuglink through libelf.
 * See elf.h for the contract. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gelf.h>
#include <libelf.h>

#include "elf_file.h"

/* Bounds on counts read from a file: far above any real interpreter. */
#define MAX_SECTIONS 65536u
#define MAX_PHDRS 4096u
#define MAX_NOTES 4096u

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#else
#error "pyheap supports x86_64 and aarch64 Linux"
#endif

struct pyheap_elf {
    int fd;
    Elf *elf;
    uint64_t file_size;
    GElf_Ehdr ehdr;
    size_t shnum;
    size_t shstrndx;
    size_t phnum;
    /* Whether .debug_info has contents inside the file, decided at open:
     * libdw decompresses SHF_COMPRESSED sections in place, after which the
     * header's size is the uncompressed one. */
    bool has_debug_info;
    char path[PATH_MAX];
};

static int corrupt(pyheap_error *err, const char *path, const char *what)
{
    return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                          "%s is not a usable ELF file: %s", path, what);
}

static bool debug_info_in_file(const pyheap_elf *e);

int pyheap_elf_open(const char *path, pyheap_elf **out, pyheap_error *err)
{
    if (!path || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_elf_open: no path");
    if (strlen(path) >= PATH_MAX)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "ELF path is too long");
    if (elf_version(EV_CURRENT) == EV_NONE)
        return pyheap_err_set(err, PYHEAP_E_IO, 0, 0,
                              "libelf is out of date: %s", elf_errmsg(-1));

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return pyheap_err_set(err, e == EACCES || e == EPERM ? PYHEAP_E_PERM
                                                              : PYHEAP_E_IO,
                              e, 0, "cannot open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return corrupt(err, path, "not a regular file");
    }
    if ((uint64_t)st.st_size < sizeof(Elf64_Ehdr)) {
        close(fd);
        return corrupt(err, path, "shorter than an ELF header");
    }

    pyheap_elf *e = calloc(1, sizeof *e);
    if (!e) {
        close(fd);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    }
    e->fd = fd;
    e->file_size = (uint64_t)st.st_size;
    memcpy(e->path, path, strlen(path) + 1);

    /* ELF_C_READ: pread on demand, no mmap (no SIGBUS if the file shrinks). */
    e->elf = elf_begin(fd, ELF_C_READ, NULL);
    const char *why = NULL;
    if (!e->elf || elf_kind(e->elf) != ELF_K_ELF)
        why = "no ELF header";
    else if (gelf_getclass(e->elf) != ELFCLASS64)
        why = "not a 64-bit ELF file";
    else if (!gelf_getehdr(e->elf, &e->ehdr))
        why = "unreadable ELF header";
    else if (e->ehdr.e_machine != HOST_MACHINE)
        why = "built for another machine";
    else if (elf_getshdrnum(e->elf, &e->shnum) != 0 || e->shnum > MAX_SECTIONS)
        why = "bad section count";
    else if ((e->ehdr.e_shoff != 0 && e->shnum == 0) ||
             (e->ehdr.e_shnum != 0 && e->ehdr.e_shnum != e->shnum))
        /* libelf reports no sections when their headers do not fit. */
        why = "truncated (section headers missing)";
    else if (e->shnum > 0 && elf_getshdrstrndx(e->elf, &e->shstrndx) != 0)
        why = "bad section name table";
    else if (elf_getphdrnum(e->elf, &e->phnum) != 0 || e->phnum > MAX_PHDRS)
        why = "bad program header count";
    else if (e->ehdr.e_shoff > e->file_size ||
             e->shnum * (uint64_t)e->ehdr.e_shentsize >
                 e->file_size - e->ehdr.e_shoff)
        why = "truncated (section headers beyond the end of the file)";
    else if (e->ehdr.e_phoff > e->file_size ||
             e->phnum * (uint64_t)e->ehdr.e_phentsize >
                 e->file_size - e->ehdr.e_phoff)
        why = "truncated (program headers beyond the end of the file)";
    if (why) {
        pyheap_elf_close(e);
        return corrupt(err, path, why);
    }
    e->has_debug_info = debug_info_in_file(e);
    *out = e;
    return 0;
}

void pyheap_elf_close(pyheap_elf *e)
{
    if (!e)
        return;
    if (e->elf)
        elf_end(e->elf);
    close(e->fd);
    free(e);
}

const char *pyheap_elf_path(const pyheap_elf *e) { return e->path; }
Elf *pyheap_elf_handle(const pyheap_elf *e) { return e->elf; }
unsigned pyheap_elf_type(const pyheap_elf *e) { return e->ehdr.e_type; }

/* Section contents, only if the section header says they lie inside the
 * file (libelf would read them anyway, but a short read must not be taken
 * for data). NULL for NOBITS, empty or out-of-file sections. */
static Elf_Data *section_data(const pyheap_elf *e, Elf_Scn *scn,
                              GElf_Shdr *sh)
{
    if (!gelf_getshdr(scn, sh))
        return NULL;
    if (sh->sh_type == SHT_NOBITS || sh->sh_size == 0)
        return NULL;
    if (sh->sh_offset > e->file_size || sh->sh_size > e->file_size - sh->sh_offset)
        return NULL;
    Elf_Data *d = elf_getdata(scn, NULL);
    if (!d || !d->d_buf || d->d_size == 0)
        return NULL;
    return d;
}

static const char *section_name(const pyheap_elf *e, const GElf_Shdr *sh)
{
    if (e->shnum == 0)
        return NULL;
    return elf_strptr(e->elf, e->shstrndx, sh->sh_name);
}

static Elf_Scn *find_section(const pyheap_elf *e, const char *name,
                             GElf_Shdr *sh_out)
{
    for (size_t i = 1; i < e->shnum; i++) {
        Elf_Scn *scn = elf_getscn(e->elf, i);
        GElf_Shdr sh;
        if (!scn || !gelf_getshdr(scn, &sh))
            continue;
        const char *n = section_name(e, &sh);
        if (n && strcmp(n, name) == 0) {
            *sh_out = sh;
            return scn;
        }
    }
    return NULL;
}

int pyheap_elf_section(const pyheap_elf *e, const char *name, uint64_t *addr,
                       uint64_t *size, unsigned *type)
{
    GElf_Shdr sh;
    if (!find_section(e, name, &sh))
        return -1;
    if (addr)
        *addr = sh.sh_addr;
    if (size)
        *size = sh.sh_size;
    if (type)
        *type = sh.sh_type;
    return 0;
}

int pyheap_elf_section_bytes(const pyheap_elf *e, const char *name,
                             const void **data, size_t *size)
{
    GElf_Shdr sh;
    Elf_Scn *scn = find_section(e, name, &sh);
    Elf_Data *d = scn ? section_data(e, scn, &sh) : NULL;
    if (!d)
        return -1;
    *data = d->d_buf;
    *size = d->d_size;
    return 0;
}

bool pyheap_elf_has_debug_info(const pyheap_elf *e)
{
    return e->has_debug_info;
}

static bool debug_info_in_file(const pyheap_elf *e)
{
    GElf_Shdr sh;
    Elf_Scn *scn = find_section(e, ".debug_info", &sh);
    return scn && sh.sh_type != SHT_NOBITS && sh.sh_size > 0 &&
           sh.sh_offset <= e->file_size &&
           sh.sh_size <= e->file_size - sh.sh_offset;
}

/* One pass over the symbols of every table of type TYPE, matching NAMES. */
static void scan_symbols(const pyheap_elf *e, unsigned type,
                         const char *const *names, size_t n, uint64_t *values,
                         uint64_t *sizes, bool *found, size_t *nfound)
{
    for (size_t i = 1; i < e->shnum && *nfound < n; i++) {
        Elf_Scn *scn = elf_getscn(e->elf, i);
        GElf_Shdr sh;
        if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != type)
            continue;
        Elf_Data *syms = section_data(e, scn, &sh);
        if (!syms || sh.sh_link == 0 || sh.sh_link >= e->shnum)
            continue;
        Elf_Scn *strscn = elf_getscn(e->elf, sh.sh_link);
        GElf_Shdr strsh;
        Elf_Data *strs = strscn ? section_data(e, strscn, &strsh) : NULL;
        if (!strs || strsh.sh_type != SHT_STRTAB)
            continue;
        size_t symsz = gelf_fsize(e->elf, ELF_T_SYM, 1, EV_CURRENT);
        if (symsz == 0)
            continue;
        size_t count = syms->d_size / symsz;
        if (count > INT_MAX)
            count = INT_MAX; /* gelf_getsym takes an int index */
        const char *strbase = strs->d_buf;
        size_t strlen_total = strs->d_size;
        for (size_t k = 1; k < count && *nfound < n; k++) {
            GElf_Sym sym;
            if (!gelf_getsym(syms, (int)k, &sym))
                break;
            if (sym.st_shndx == SHN_UNDEF || sym.st_name == 0 ||
                sym.st_name >= strlen_total)
                continue;
            const char *nm = strbase + sym.st_name;
            size_t room = strlen_total - sym.st_name;
            for (size_t j = 0; j < n; j++) {
                if (found[j] || nm[0] != names[j][0])
                    continue;
                size_t len = strlen(names[j]);
                if (len < room && memcmp(nm, names[j], len + 1) == 0) {
                    found[j] = true;
                    values[j] = sym.st_value;
                    if (sizes)
                        sizes[j] = sym.st_size;
                    (*nfound)++;
                    break;
                }
            }
        }
    }
}

size_t pyheap_elf_symbols(const pyheap_elf *e, const char *const *names,
                          size_t n, uint64_t *values)
{
    if (n == 0)
        return 0;
    bool *found = calloc(n, sizeof *found);
    if (!found)
        return 0;
    size_t nfound = 0;
    scan_symbols(e, SHT_DYNSYM, names, n, values, NULL, found, &nfound);
    scan_symbols(e, SHT_SYMTAB, names, n, values, NULL, found, &nfound);
    free(found);
    return nfound;
}

int pyheap_elf_symbol(const pyheap_elf *e, const char *name, uint64_t *value,
                      uint64_t *size)
{
    const char *names[1] = {name};
    uint64_t v = 0, s = 0;
    bool found = false;
    size_t nfound = 0;
    scan_symbols(e, SHT_DYNSYM, names, 1, &v, &s, &found, &nfound);
    scan_symbols(e, SHT_SYMTAB, names, 1, &v, &s, &found, &nfound);
    if (!found)
        return -1;
    if (value)
        *value = v;
    if (size)
        *size = s;
    return 0;
}

int pyheap_elf_first_load(const pyheap_elf *e, uint64_t *p_offset,
                          uint64_t *p_vaddr, pyheap_error *err)
{
    bool have = false;
    GElf_Phdr best = {0};
    for (size_t i = 0; i < e->phnum; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e->elf, (int)i, &ph))
            return corrupt(err, e->path, "unreadable program header");
        if (ph.p_type != PT_LOAD)
            continue;
        if (!have || ph.p_offset < best.p_offset) {
            best = ph;
            have = true;
        }
    }
    if (!have)
        return corrupt(err, e->path, "no PT_LOAD segment");
    *p_offset = best.p_offset;
    *p_vaddr = best.p_vaddr;
    return 0;
}

/* Search one block of notes for the GNU build-id. */
static int build_id_in(Elf_Data *d, uint8_t *buf, size_t max, size_t *len)
{
    size_t off = 0, next;
    GElf_Nhdr nh;
    size_t name_off, desc_off;
    for (unsigned i = 0; i < MAX_NOTES && off < d->d_size; i++) {
        next = gelf_getnote(d, off, &nh, &name_off, &desc_off);
        if (next == 0 || next <= off)
            break;
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
            name_off + 4 <= d->d_size &&
            memcmp((const char *)d->d_buf + name_off, "GNU", 4) == 0 &&
            nh.n_descsz > 0 && nh.n_descsz <= max &&
            desc_off + nh.n_descsz <= d->d_size) {
            memcpy(buf, (const char *)d->d_buf + desc_off, nh.n_descsz);
            *len = nh.n_descsz;
            return 0;
        }
        off = next;
    }
    return -1;
}

int pyheap_elf_build_id(const pyheap_elf *e, uint8_t *buf, size_t max,
                        size_t *len)
{
    for (size_t i = 1; i < e->shnum; i++) {
        Elf_Scn *scn = elf_getscn(e->elf, i);
        GElf_Shdr sh;
        if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
            continue;
        Elf_Data *d = section_data(e, scn, &sh);
        if (d && build_id_in(d, buf, max, len) == 0)
            return 0;
    }
    /* No section headers (or no note section): try the PT_NOTE segments. */
    for (size_t i = 0; i < e->phnum; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e->elf, (int)i, &ph) || ph.p_type != PT_NOTE)
            continue;
        if (ph.p_offset > e->file_size || ph.p_filesz > e->file_size - ph.p_offset ||
            ph.p_filesz == 0 || ph.p_filesz > (1u << 20))
            continue;
        Elf_Data *d = elf_getdata_rawchunk(e->elf, (int64_t)ph.p_offset,
                                           ph.p_filesz,
                                           ph.p_align == 8 ? ELF_T_NHDR8
                                                           : ELF_T_NHDR);
        if (d && build_id_in(d, buf, max, len) == 0)
            return 0;
    }
    return -1;
}

int pyheap_elf_debuglink(const pyheap_elf *e, char *name, size_t max,
                         uint32_t *crc)
{
    GElf_Shdr sh;
    Elf_Scn *scn = find_section(e, ".gnu_debuglink", &sh);
    if (!scn)
        return -1;
    Elf_Data *d = section_data(e, scn, &sh);
    if (!d)
        return -1;
    const char *p = d->d_buf;
    const char *nul = memchr(p, '\0', d->d_size);
    if (!nul || nul == p)
        return -1;
    size_t nlen = (size_t)(nul - p);
    size_t crc_off = (nlen + 1 + 3) & ~(size_t)3;
    if (nlen >= max || crc_off + 4 > d->d_size || memchr(p, '/', nlen))
        return -1;
    const unsigned char *c = (const unsigned char *)p + crc_off;
    uint32_t v;
    if (e->ehdr.e_ident[EI_DATA] == ELFDATA2MSB)
        v = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
    else
        v = (uint32_t)c[3] << 24 | (uint32_t)c[2] << 16 | (uint32_t)c[1] << 8 | c[0];
    memcpy(name, p, nlen + 1);
    *crc = v;
    return 0;
}

int pyheap_elf_file_crc(const char *path, uint32_t *crc, pyheap_error *err)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return pyheap_err_set(err, PYHEAP_E_IO, e, 0, "cannot open %s: %s",
                              path, strerror(e));
    }
    enum { BUFSZ = 1 << 16 };
    unsigned char *buf = malloc(BUFSZ);
    if (!buf) {
        close(fd);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    }
    uint32_t c = 0xFFFFFFFFu;
    for (;;) {
        ssize_t r = read(fd, buf, BUFSZ);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return pyheap_err_set(err, PYHEAP_E_IO, e, 0, "cannot read %s: %s",
                                  path, strerror(e));
        }
        if (r == 0)
            break;
        for (ssize_t i = 0; i < r; i++)
            c = table[(c ^ buf[i]) & 0xFF] ^ (c >> 8);
    }
    free(buf);
    close(fd);
    *crc = c ^ 0xFFFFFFFFu;
    return 0;
}
