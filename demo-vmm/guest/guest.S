# The demo guest: three 64-bit programs, one per vCPU, loaded at CODE (0x8000) with the
# host-built page tables, GDT and IDT (see src/guest.rs). Every value goes to the report
# port as a 32-bit `out`; each vCPU's sequence of reports is deterministic (no report depends
# on timing), however the vCPUs interleave.
#
# Assemble with `python3 guest/assemble.py` (GNU as), which regenerates src/guest_code.rs.
# The demo-vmm test `test_guest_code_matches_source` checks the two agree where `as` exists.

.intel_syntax noprefix
.code64
.text

.equ REPORT_PORT, 0x10
.equ DONE_PORT, 0x12
.equ COM1_SCR, 0x3ff
.equ COM1_LSR, 0x3fd
.equ COM1_RBR, 0x3f8
.equ LAPIC, 0xfee00000
.equ LAPIC_EOI, 0xfee000b0

# Data (identity mapped; see src/guest.rs).
.equ TICKS0, 0x10000
.equ TICKS1, 0x10004
.equ TICKS2, 0x10008
.equ XMM0_DATA, 0x10010
.equ XMM9_DATA, 0x10020
.equ XMM1_DATA, 0x10030
.equ XMM_OUT, 0x10040
.equ UART_DATA, 0x10060
.equ AP1_DONE, 0x10070
.equ AP2_READY, 0x10074
.equ AP2_DONE, 0x10078
.equ IPI_SEEN, 0x1007c
.equ MAILBOX, 0x10080
.equ AP1_WAITING, 0x10084
.equ VIRTIO_DONE, 0x10088
.equ AP1_XMM_OUT, 0x10090
# Guest memory above 2 MiB: how many pages the BSP touches (0 with 2 MiB of memory), one
# every 64 KiB from 2 MiB on, at a cache line that moves with the page.
.equ MEM_TOUCHES, 0x100c0
.equ TOUCH_BASE, 0x200000

# The virtio-mmio device and the BSP driver's queue (8 descriptors, 4 requests).
.equ VIRTIO, 0xd0000000
.equ VQ_DESC, 0x11000
.equ VQ_AVAIL, 0x11100
.equ VQ_USED, 0x11200
.equ VQ_REQ, 0x11300
.equ VQ_RESP, 0x11340
.equ VQ_REQUESTS, 4

# -------------------------------------------------------------------------------------------
# vCPU 0, the BSP: XMM registers, an MSR, the UART, its LAPIC timer, a virtio driver; starts
# AP2 with an IPI.
bsp_entry:
    mov eax, 0x53544152                 # "RATS"
    out REPORT_PORT, eax
    # Load xmm0 and xmm9, then wipe their source: only the vCPU's xsave area keeps them.
    movdqu xmm0, [XMM0_DATA]
    movdqu xmm9, [XMM9_DATA]
    mov qword ptr [XMM0_DATA], 0
    mov qword ptr [XMM0_DATA + 8], 0
    mov qword ptr [XMM9_DATA], 0
    mov qword ptr [XMM9_DATA + 8], 0
    mov eax, 1
    out REPORT_PORT, eax
    # The UART scratch register and IA32_KERNEL_GS_BASE.
    mov dx, COM1_SCR
    mov al, 0xa5
    out dx, al
    mov ecx, 0xc0000102
    mov eax, 0x89abcdef
    mov edx, 0x7654
    wrmsr
    xor eax, eax
    xor edx, edx
    mov eax, 2
    out REPORT_PORT, eax
    # LAPIC timer: periodic, vector 0x20, every 100 us (divide by 1, count 100000).
    mov ebx, LAPIC
    mov dword ptr [rbx + 0xf0], 0x1ff   # SVR: enabled, spurious vector 0xff
    mov dword ptr [rbx + 0x3e0], 0xb    # divide by 1
    mov dword ptr [rbx + 0x320], 0x20020
    mov dword ptr [rbx + 0x380], 100000
bsp_wait5:
    cli
    cmp dword ptr [TICKS0], 5
    jae bsp_ticked5
    sti
    hlt
    jmp bsp_wait5
bsp_ticked5:
    sti
    mov eax, 3
    out REPORT_PORT, eax
    # xmm0 and xmm9 through memory, four words each, then the MSR.
    movdqu [XMM_OUT], xmm0
    movdqu [XMM_OUT + 16], xmm9
    mov eax, [XMM_OUT]
    out REPORT_PORT, eax
    mov eax, [XMM_OUT + 4]
    out REPORT_PORT, eax
    mov eax, [XMM_OUT + 8]
    out REPORT_PORT, eax
    mov eax, [XMM_OUT + 12]
    out REPORT_PORT, eax
    mov eax, [XMM_OUT + 16]
    out REPORT_PORT, eax
    mov eax, [XMM_OUT + 20]
    out REPORT_PORT, eax
    mov eax, [XMM_OUT + 24]
    out REPORT_PORT, eax
    mov eax, [XMM_OUT + 28]
    out REPORT_PORT, eax
    mov ecx, 0xc0000102
    rdmsr
    out REPORT_PORT, eax
    mov eax, edx
    out REPORT_PORT, eax
bsp_wait10:
    cli
    cmp dword ptr [TICKS0], 10
    jae bsp_ticked10
    sti
    hlt
    jmp bsp_wait10
bsp_ticked10:
    sti
    mov eax, 5
    out REPORT_PORT, eax
    # Memory above 2 MiB, before the snapshot point: write a value derived from its address
    # into each touched page, then report how many (nothing at all with 2 MiB of memory).
    mov ecx, [MEM_TOUCHES]
    test ecx, ecx
    jz bsp_touched
    xor esi, esi
    movabs r8, 0x9e3779b97f4a7c15
bsp_touch1:
    call touch_addr
    mov rax, rdi
    imul rax, r8
    mov [rdi], rax
    inc esi
    cmp esi, ecx
    jb bsp_touch1
    mov eax, ecx
    out REPORT_PORT, eax
bsp_touched:
    # Wait until AP1 spins after its second result and AP2 waits for its IPI: from here until
    # the virtio requests are complete, AP1 is running and AP2 is halted.
bsp_wait_mid:
    cli
    cmp dword ptr [AP1_WAITING], 1
    jne bsp_sleep_mid
    cmp dword ptr [AP2_READY], 1
    je bsp_mid
bsp_sleep_mid:
    sti
    hlt
    jmp bsp_wait_mid
bsp_mid:
    sti
    # --- virtio driver: identify the device, negotiate VIRTIO_F_VERSION_1, set up queue 0.
    mov r12d, VIRTIO
    mov eax, [r12 + 0x008]              # DeviceID
    out REPORT_PORT, eax
    mov dword ptr [r12 + 0x070], 0      # Status: reset
    mov dword ptr [r12 + 0x070], 3      # ACKNOWLEDGE | DRIVER
    mov dword ptr [r12 + 0x024], 1      # DriverFeaturesSel: bits 32..63
    mov dword ptr [r12 + 0x020], 1      # VIRTIO_F_VERSION_1
    mov dword ptr [r12 + 0x024], 0
    mov dword ptr [r12 + 0x020], 0
    mov dword ptr [r12 + 0x070], 0xb    # | FEATURES_OK
    mov eax, [r12 + 0x070]              # still FEATURES_OK: the device accepted
    out REPORT_PORT, eax
    mov dword ptr [r12 + 0x030], 0      # QueueSel
    mov dword ptr [r12 + 0x038], 8      # QueueNum
    mov dword ptr [r12 + 0x080], VQ_DESC
    mov dword ptr [r12 + 0x084], 0
    mov dword ptr [r12 + 0x090], VQ_AVAIL
    mov dword ptr [r12 + 0x094], 0
    mov dword ptr [r12 + 0x0a0], VQ_USED
    mov dword ptr [r12 + 0x0a4], 0
    mov dword ptr [r12 + 0x044], 1      # QueueReady
    mov dword ptr [r12 + 0x070], 0xf    # | DRIVER_OK
    # Request i: descriptor 2i, the payload 0x600d0000 + i * 0x111 (device reads), chained to
    # descriptor 2i+1, the response (device writes).
    xor ecx, ecx
bsp_vq_fill:
    imul eax, ecx, 0x111
    add eax, 0x600d0000
    mov [rcx * 4 + VQ_REQ], eax
    mov edx, ecx
    shl edx, 5
    lea edi, [rcx * 4 + VQ_REQ]
    mov [rdx + VQ_DESC], rdi            # addr
    mov dword ptr [rdx + VQ_DESC + 8], 4    # len
    mov word ptr [rdx + VQ_DESC + 12], 1    # VIRTQ_DESC_F_NEXT
    lea eax, [rcx * 2 + 1]
    mov [rdx + VQ_DESC + 14], ax        # next
    lea edi, [rcx * 4 + VQ_RESP]
    mov [rdx + VQ_DESC + 16], rdi
    mov dword ptr [rdx + VQ_DESC + 24], 4
    mov word ptr [rdx + VQ_DESC + 28], 2    # VIRTQ_DESC_F_WRITE
    mov word ptr [rdx + VQ_DESC + 30], 0
    lea eax, [rcx * 2]
    mov [rcx * 2 + VQ_AVAIL + 4], ax    # avail ring entry i: head 2i
    inc ecx
    cmp ecx, VQ_REQUESTS
    jb bsp_vq_fill
    mov word ptr [VQ_AVAIL + 2], VQ_REQUESTS   # publish: avail idx
    mov dword ptr [r12 + 0x050], 0      # QueueNotify
    mov eax, 0x60                       # submitted
    out REPORT_PORT, eax
bsp_vq_wait:
    cli
    cmp word ptr [VQ_USED + 2], VQ_REQUESTS
    jae bsp_vq_done
    sti
    hlt
    jmp bsp_vq_wait
bsp_vq_done:
    sti
    mov eax, [VQ_RESP]
    out REPORT_PORT, eax
    mov eax, [VQ_RESP + 4]
    out REPORT_PORT, eax
    mov eax, [VQ_RESP + 8]
    out REPORT_PORT, eax
    mov eax, [VQ_RESP + 12]
    out REPORT_PORT, eax
    # Memory above 2 MiB, after the snapshot point: fold every touched page's value into a
    # checksum, writing the running checksum back into the page; report the checksum.
    mov ecx, [MEM_TOUCHES]
    test ecx, ecx
    jz bsp_checked
    xor esi, esi
    xor r9d, r9d
bsp_touch2:
    call touch_addr
    rol r9, 5
    xor r9, [rdi]
    mov [rdi], r9
    inc esi
    cmp esi, ecx
    jb bsp_touch2
    mov eax, r9d
    out REPORT_PORT, eax
    mov rax, r9
    shr rax, 32
    out REPORT_PORT, eax
bsp_checked:
    mov eax, [r12 + 0x060]              # InterruptStatus
    mov [r12 + 0x064], eax              # InterruptACK
    mov dword ptr [VIRTIO_DONE], 1      # lets AP1 go on
    # Wait until AP1 has finished and AP2 waits for its IPI.
bsp_wait_aps:
    cli
    cmp dword ptr [AP1_DONE], 1
    jne bsp_sleep_aps
    cmp dword ptr [AP2_READY], 1
    je bsp_aps_ready
bsp_sleep_aps:
    sti
    hlt
    jmp bsp_wait_aps
bsp_aps_ready:
    sti
    # Post a value in the mailbox and wake AP2 (APIC ID 2) with a fixed IPI, vector 0x40.
    mov dword ptr [MAILBOX], 0x4d41494c  # "LIAM"
    mov dword ptr [rbx + 0x310], 0x02000000
    mov dword ptr [rbx + 0x300], 0x4040
    mov eax, 6
    out REPORT_PORT, eax
bsp_wait_ap2:
    cli
    cmp dword ptr [AP2_DONE], 1
    je bsp_ap2_done
    sti
    hlt
    jmp bsp_wait_ap2
bsp_ap2_done:
    # Interrupts stay off; stop the timer.
    mov dword ptr [rbx + 0x380], 0
    mov eax, 7
    out REPORT_PORT, eax
    # The UART scratch register, then the pending input (data-ready polling, at most 8 bytes).
    mov dx, COM1_SCR
    in al, dx
    movzx eax, al
    out REPORT_PORT, eax
    xor ecx, ecx
bsp_rx:
    cmp ecx, 8
    jae bsp_rx_done
    mov dx, COM1_LSR
    in al, dx
    test al, 1
    je bsp_rx_done
    mov dx, COM1_RBR
    in al, dx
    mov byte ptr [rcx + UART_DATA], al
    inc ecx
    jmp bsp_rx
bsp_rx_done:
    mov eax, ecx
    out REPORT_PORT, eax
    mov eax, [UART_DATA]
    out REPORT_PORT, eax
    mov eax, [UART_DATA + 4]
    out REPORT_PORT, eax
    mov eax, 0x454e4f44                 # "DONE"
    out DONE_PORT, eax
bsp_park:
    cli
    hlt
    jmp bsp_park

# -------------------------------------------------------------------------------------------
# vCPU 1, AP1: keeps running, computing a 64-bit LCG in its registers, with its own LAPIC
# timer; after its second result it spins (running, not halted) until the BSP's virtio
# requests are complete; then needs three more ticks of its timer.
ap1_entry:
    mov eax, 0x00315041                 # "AP1"
    out REPORT_PORT, eax
    movdqu xmm1, [XMM1_DATA]
    mov qword ptr [XMM1_DATA], 0
    mov qword ptr [XMM1_DATA + 8], 0
    # LAPIC timer: periodic, vector 0x21, every 150 us.
    mov ebx, LAPIC
    mov dword ptr [rbx + 0xf0], 0x1ff
    mov dword ptr [rbx + 0x3e0], 0xb
    mov dword ptr [rbx + 0x320], 0x20021
    mov dword ptr [rbx + 0x380], 150000
    sti
    movabs rax, 0x0123456789abcdef      # seed
    movabs r8, 6364136223846793005      # multiplier
    movabs r9, 1442695040888963407      # increment
    mov esi, 3                          # chunks
ap1_chunk:
    mov ecx, 1500                       # iterations per chunk
ap1_step:
    imul rax, r8
    add rax, r9
    dec ecx
    jnz ap1_step
    out REPORT_PORT, eax                # low word of the state after each chunk
    dec esi
    jz ap1_chunks_done
    cmp esi, 1
    jne ap1_chunk
    mov dword ptr [AP1_WAITING], 1
ap1_spin:
    cmp dword ptr [VIRTIO_DONE], 1
    jne ap1_spin
    jmp ap1_chunk
ap1_chunks_done:
    # Three more ticks, counted from now.
    mov edi, [TICKS1]
    add edi, 3
ap1_wait:
    cli
    cmp [TICKS1], edi
    jae ap1_ticked
    sti
    hlt
    jmp ap1_wait
ap1_ticked:
    mov dword ptr [rbx + 0x380], 0      # stop the timer
    shr rax, 32
    out REPORT_PORT, eax                # high word of the final state
    movdqu [AP1_XMM_OUT], xmm1
    mov eax, [AP1_XMM_OUT]
    out REPORT_PORT, eax
    mov eax, [AP1_XMM_OUT + 4]
    out REPORT_PORT, eax
    mov eax, [AP1_XMM_OUT + 8]
    out REPORT_PORT, eax
    mov eax, [AP1_XMM_OUT + 12]
    out REPORT_PORT, eax
    mov dword ptr [AP1_DONE], 1
    mov eax, 0x444e4531                 # "1END"
    out REPORT_PORT, eax
ap1_park:
    cli
    hlt
    jmp ap1_park

# -------------------------------------------------------------------------------------------
# vCPU 2, AP2: one tick of its own one-shot LAPIC timer, then halts until the BSP's IPI.
ap2_entry:
    mov eax, 0x00325041                 # "AP2"
    out REPORT_PORT, eax
    movabs r13, 0x0badcafe600dbeef      # kept in a register across the halt
    mov ebx, LAPIC
    mov dword ptr [rbx + 0xf0], 0x1ff
    mov dword ptr [rbx + 0x3e0], 0xb
    mov dword ptr [rbx + 0x320], 0x22   # one-shot, vector 0x22
    mov dword ptr [rbx + 0x380], 100000
ap2_wait_tick:
    cli
    cmp dword ptr [TICKS2], 1
    jae ap2_ticked
    sti
    hlt
    jmp ap2_wait_tick
ap2_ticked:
    mov eax, 0x21
    out REPORT_PORT, eax
    mov dword ptr [AP2_READY], 1
ap2_wait_ipi:
    cli
    cmp dword ptr [IPI_SEEN], 1
    je ap2_woken
    sti
    hlt
    jmp ap2_wait_ipi
ap2_woken:
    mov eax, [MAILBOX]
    out REPORT_PORT, eax
    mov eax, r13d
    out REPORT_PORT, eax
    mov rax, r13
    shr rax, 32
    out REPORT_PORT, eax
    mov dword ptr [AP2_DONE], 1
    mov eax, 0x444e4532                 # "2END"
    out REPORT_PORT, eax
ap2_park:
    cli
    hlt
    jmp ap2_park

# -------------------------------------------------------------------------------------------
# rdi = the address of touch esi: TOUCH_BASE + esi * 64 KiB + (esi % 64) * 64. Clobbers eax.
touch_addr:
    mov edi, esi
    shl rdi, 16
    mov eax, esi
    and eax, 63
    shl eax, 6
    add rdi, rax
    add rdi, TOUCH_BASE
    ret

# -------------------------------------------------------------------------------------------
# Interrupt handlers: each vCPU's timer has its own vector and counter.
timer0_handler:
    inc dword ptr [TICKS0]
    jmp eoi_return
timer1_handler:
    inc dword ptr [TICKS1]
    jmp eoi_return
timer2_handler:
    inc dword ptr [TICKS2]
    jmp eoi_return
ipi_handler:
    mov dword ptr [IPI_SEEN], 1
eoi_return:
    push rax
    mov eax, LAPIC_EOI
    mov dword ptr [rax], 0
    pop rax
    iretq
spurious_handler:
    iretq
