/* VCPU_RUN through the run page with lendvm's hello guest (an x86-64 ELF
 * whose path is the case argument): SPEC §2.9, GM-MM-6; DESIGN D1, D5, D7.
 * The guest greets on its console, fills 1 MiB of RAM at 4 MiB, checks it
 * and stops the VM with code 0. */
#include "check.h"

#include <pthread.h>
#include <signal.h>

#define RAM 0ULL
#define DTB 0x80000000ULL
#define SCRATCH (4 * MiB)

struct hello {
	int vm, gm, vcpu;
	struct gunyah_vcpu_run *run;
};

/* RAM [0, ram) lent at guest address 0, the DTB page lent at 2 GiB;
 * X2 (RDX) tells the guest how many vCPUs to wait for. */
static void hello_setup_for(struct hello *h, uint64_t ram, uint64_t vcpus)
{
	int d = OK(dev_open(1));
	h->vm = OK(vm_create(d));
	h->gm = OK(gm_create(d, 16 * MiB, 0));
	uint64_t entry = load_elf(case_arg, h->gm);
	OK(map_mem(h->vm, RAM, 0x71, h->gm, 0, ram));
	OK(map_mem(h->vm, DTB, 0x71, h->gm, 8 * MiB, 4 * KiB));
	OK(dtb_config(h->vm, DTB, 4 * KiB));
	h->vcpu = OK(vcpu_add(h->vm, 0));
	h->run = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, h->vcpu, 0);
	CHECK(h->run != MAP_FAILED);
	OK(boot_reg(h->vm, REG_SET_PC, 0, entry));
	OK(boot_reg(h->vm, REG_SET_X, 2, vcpus));
	OK(ioctl(h->vm, GUNYAH_VM_START));
	fflush(stdout);
}

static void hello_setup(struct hello *h, uint64_t ram)
{
	hello_setup_for(h, ram, 1);
}

static uint32_t run(struct hello *h)
{
	OK(ioctl(h->vcpu, GUNYAH_VCPU_RUN));
	CHECK(h->run->exit_reason != GUNYAH_VCPU_EXIT_UNKNOWN);
	return h->run->exit_reason;
}

static void expect_exit_code_0(struct hello *h)
{
	CHECK(h->run->status.status == GUNYAH_VM_STATUS_EXITED);
	CHECK(h->run->status.exit_info.reason_size == 4);
	CHECK(h->run->status.exit_info.reason[0] == 0);
}

void the_hello_guest_runs_to_its_exit_through_the_run_page(void)
{
	struct hello h;
	hello_setup(&h, 8 * MiB);
	CHECK(run(&h) == GUNYAH_VCPU_EXIT_STATUS);
	expect_exit_code_0(&h);
	/* SPEC R-9: system down; later runs return 0 at once and leave the
	 * page as it is: the STATUS exit stays visible, or what the program
	 * wrote over it. */
	OK(ioctl(h.vcpu, GUNYAH_VCPU_RUN));
	CHECK(h.run->exit_reason == GUNYAH_VCPU_EXIT_STATUS);
	expect_exit_code_0(&h);
	h.run->exit_reason = GUNYAH_VCPU_EXIT_UNKNOWN;
	OK(ioctl(h.vcpu, GUNYAH_VCPU_RUN));
	CHECK(h.run->exit_reason == GUNYAH_VCPU_EXIT_UNKNOWN);
	printf("guest exited with code 0\n");
}

/* DESIGN D1 in the compat profile: unbound addresses below 2 GiB are the
 * platform's MMIO; SPEC; DESIGN D7 (FAULT). */
void an_unbound_access_in_the_platform_window_is_an_mmio_exit(void)
{
	struct hello h;
	hello_setup(&h, 4 * MiB);
	for (uint64_t i = 0; i < 2; i++) {
		CHECK(run(&h) == GUNYAH_VCPU_EXIT_MMIO);
		CHECK(h.run->mmio.phys_addr == SCRATCH + 8 * i);
		CHECK(h.run->mmio.is_write == 1 && h.run->mmio.len == 8);
		uint64_t value;
		memcpy(&value, h.run->mmio.data, 8);
		CHECK(value == (i ^ 0x5a5a));
		CHECK(h.run->mmio.resume_action == GUNYAH_VCPU_RESUME_HANDLED);
	}
	/* SPEC R-8: an unknown resume action is EINVAL and changes nothing. */
	h.run->mmio.resume_action = 7;
	FAILS(ioctl(h.vcpu, GUNYAH_VCPU_RUN), EINVAL);
	/* FAULT: the guest takes a page fault it has no handler for. */
	h.run->mmio.resume_action = GUNYAH_VCPU_RESUME_FAULT;
	CHECK(run(&h) == GUNYAH_VCPU_EXIT_STATUS);
	CHECK(h.run->status.status == GUNYAH_VM_STATUS_CRASHED);
}

/* SPEC GM-MM-6, R-5, R-6: a live program mapping keeps lend-bound pages
 * from the guest (PAGE_FAULT -EPERM) until it goes and the guest retries. */
void a_program_mapping_keeps_pages_from_the_guest_until_retry(void)
{
	struct hello h;
	hello_setup(&h, 8 * MiB);
	uint8_t *held = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, h.gm, SCRATCH);
	CHECK(held != MAP_FAILED);
	CHECK(run(&h) == GUNYAH_VCPU_EXIT_PAGE_FAULT);
	CHECK(h.run->page_fault.phys_addr == SCRATCH);
	CHECK(h.run->page_fault.attempt == -EPERM);
	CHECK(h.run->page_fault.resume_action == GUNYAH_VCPU_RESUME_FAULT);
	OK(munmap(held, MiB));
	h.run->page_fault.resume_action = GUNYAH_VCPU_RESUME_RETRY;
	CHECK(run(&h) == GUNYAH_VCPU_EXIT_STATUS);
	expect_exit_code_0(&h);
}

/* DESIGN D13 (e), D5: a program mapping made over pages the guest holds
 * cannot reach them; once UNMAP returns them they read as zero. */
void lent_pages_are_hidden_from_a_program_mapping_until_unmap(void)
{
	struct hello h;
	hello_setup(&h, 8 * MiB);
	CHECK(run(&h) == GUNYAH_VCPU_EXIT_STATUS);
	volatile uint8_t *ram = mmap(NULL, 8 * MiB, PROT_READ, MAP_SHARED, h.gm, 0);
	CHECK(ram != MAP_FAILED);
	CHECK(read_faults(ram + 1 * MiB));   /* the image: lent */
	CHECK(read_faults(ram + SCRATCH));   /* the scratch RAM: lent */
	CHECK(!read_faults(ram + 7 * MiB));  /* never touched: the host's */
	OK(map_mem(h.vm, RAM, 0x171, h.gm, 0, 8 * MiB));
	CHECK(!read_faults(ram + 1 * MiB));
	CHECK(ram[1 * MiB] == 0 && ram[SCRATCH] == 0);
	/* mprotect keeps working on the recorded mapping. */
	OK(mprotect((void *)ram, 8 * MiB, PROT_READ | PROT_WRITE));
	ram[0] = 1;
	OK(munmap((void *)ram, 8 * MiB));
}

/* SPEC R-4. */
void immediate_exit_makes_vcpu_run_return_eintr(void)
{
	struct hello h;
	hello_setup(&h, 8 * MiB);
	h.run->immediate_exit = 1;
	FAILS(ioctl(h.vcpu, GUNYAH_VCPU_RUN), EINTR);
	h.run->immediate_exit = 0;
	CHECK(run(&h) == GUNYAH_VCPU_EXIT_STATUS);
	expect_exit_code_0(&h);
}

static void on_signal(int sig)
{
	(void)sig;
}

static void *run_thread(void *arg)
{
	struct hello *h = arg;
	errno = 0;
	long r = ioctl(h->vcpu, GUNYAH_VCPU_RUN);
	return (void *)(r == -1 ? (long)errno : 0);
}

/* SPEC R-4: a signal to the thread inside VCPU_RUN (how VMMs stop a
 * running vCPU) ends the run with EINTR; the vCPU can run on after. */
void a_signal_to_a_running_vcpu_thread_ends_vcpu_run_with_eintr(void)
{
	/* A run that never returns fails the case instead of hanging it. */
	alarm(30);
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	OK(sigaction(SIGUSR1, &sa, NULL));
	struct hello h;
	/* Two vCPUs announced, one added: vCPU 0 spins waiting for the other. */
	hello_setup_for(&h, 8 * MiB, 2);
	for (int round = 0; round < 2; round++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, run_thread, &h) == 0);
		usleep(200 * 1000);
		CHECK(pthread_kill(t, SIGUSR1) == 0);
		void *err;
		CHECK(pthread_join(t, &err) == 0);
		CHECK((long)err == EINTR);
	}
}
